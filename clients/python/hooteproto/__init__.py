"""hooteproto: a HOOT/1 client for Hootenanny, generated from schema/.

- `Client` (sync) and `hooteproto.aio.Client` (asyncio): typed helpers for the common calls
  (`ping`, `lua_eval`, `script_store`, `job_*`, `cas_*`, `artifact_*`, `transport_*`,
  `timeline_*`) and `call(case, message)` for any request.
- `HootError`: the peer's error (or a local timeout) with its canonical `code`.
- `hooteproto.v1`: the message classes, generated from schema/ at build time.
"""

from hooteproto._calls import BEAT_MARKER, CUE_POINT, GENERATE_TRANSITION, SECTION_CHANGE
from hooteproto._core import to_python
from hooteproto.client import Client
from hooteproto.errors import HootError

__all__ = ["Client", "HootError", "to_python", "SECTION_CHANGE", "BEAT_MARKER", "CUE_POINT", "GENERATE_TRANSITION"]
