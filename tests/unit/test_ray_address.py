"""Ray addresses are checked before anything runs: a usage error for a malformed one, a fast refusal for a dead one."""

import socket
import time

import pytest

from activeft_label.embeddings.on_ray import check_address, connect
from activeft_label.errors import ActiveFTError, InputError


@pytest.mark.parametrize("address, where", [("auto", None), ("127.0.0.1:6379", ("127.0.0.1", 6379)),
                                            ("ray://head.example:10001", ("head.example", 10001)),
                                            ("[::1]:6379", ("::1", 6379))])
def test_well_formed_addresses(address, where):
    assert check_address(address) == (address, where)


@pytest.mark.parametrize("address", ["", "   ", "head", "head:", ":6379", "head:port", "head:70000",
                                     "http://head:6379/x"])
def test_malformed_addresses_are_usage_errors(address):
    with pytest.raises(InputError):
        check_address(address)


def test_an_address_where_nothing_listens_is_refused_within_seconds():
    pytest.importorskip("ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ActiveFTError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}.*ray start --head"):
        connect(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10
