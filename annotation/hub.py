"""What a call to the Hugging Face Hub raises when the Hub cannot do it now (one tuple for all).

HTTP errors (``HfHubHTTPError``, 401/404/429/5xx) and local cache misses are ``OSError``; timeouts
and refused connections are ``httpx2.HTTPError`` (the HTTP client huggingface_hub uses); a
malformed repo id is a ``ValueError``. Anything else a Hub call raises is a bug and surfaces.
"""

from __future__ import annotations

import httpx2

HUB_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, httpx2.HTTPError)
