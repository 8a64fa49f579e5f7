"""Local items in and out: image folders and lists, features files, the selection files written.

:mod:`.sources` lists images and reads features files, :mod:`.pool` turns a
source into features (embedding images through :mod:`activeft_label.embeddings`),
:mod:`.output` writes selections atomically, :mod:`.demo` writes real demo
images (Fashion-MNIST, or scikit-learn's digits) as PNG files.
"""

from .output import COLUMNS, check_output_path, write_atomic, write_selection
from .pool import Pool, load_pool
from .sources import IMAGE_EXTENSIONS, is_features_file, list_images, load_features

__all__ = ["COLUMNS", "IMAGE_EXTENSIONS", "Pool", "check_output_path", "is_features_file", "list_images",
           "load_features", "load_pool", "write_atomic", "write_selection"]
