"""The few private names of ``label_studio_sdk`` that the connector needs, in one place.

label-studio-sdk 2.x has no public API for these: the headers the client
sends (with the access token it derived from a personal access token) and
that cached access token itself.  Each
function says why; all were checked against label-studio-sdk 2.1.2.  When
the SDK changes, this is the only module to adapt.
"""


def request_headers(client):
    """The headers the SDK client sends with a request, ``Authorization`` included.

    Private: ``LabelStudio._client_wrapper`` (its ``get_headers()`` is public, the wrapper is not).  For a
    personal access token it returns a valid access token, refreshing it first when it has expired; no public
    API gives that header.  Checked: label-studio-sdk 2.1.2.
    """
    return client._client_wrapper.get_headers()


def cached_access_token(client):
    """The access token the SDK client currently holds for a personal access token, or None.

    Private: ``_client_wrapper._tokens_client._access_token``; no public API exposes it.  Needed to scrub the
    token from error messages without a request (the tokens client's ``api_key`` property would refresh an
    expired token first).  Missing attributes give None.  Checked: label-studio-sdk 2.1.2.
    """
    tokens = getattr(getattr(client, "_client_wrapper", None), "_tokens_client", None)
    return getattr(tokens, "_access_token", None)
