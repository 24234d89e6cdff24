"""Every check of meaning a config must pass, registered: the config's own (unique names, references) and each
part's, where it is implemented. `meshbatch check`, `run` and a reload import this module before they load a
config, so that they judge it by every rule. The imports register the checks in the order their problems are
listed.
"""

# ruff: noqa: I001, F401
from meshbatch.config import checks as _config
from meshbatch.ingest import checks as _ingest
from meshbatch.upstream import checks as _upstream
from meshbatch.batching import checks as _batching
from meshbatch.telemetry import checks as _telemetry
from meshbatch.layers import checks as _layers
from meshbatch.security import checks as _security
from meshbatch.http import checks as _http
