"""The HTTP half of WHIP/WHEP for the aiortc peers: one request with a bearer token."""
import urllib.request


def http(method, url, token, body=None):
    """(status, headers, body text) of one request; `body` is an SDP offer when given."""
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/sdp")
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.status, res.headers, res.read().decode()
