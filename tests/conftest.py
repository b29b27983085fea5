"""Suite-wide isolation: no test reads or writes the user's videdit config (C2PA keys)."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_config_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("VIDEDIT_CONFIG_DIR", str(tmp_path_factory.mktemp("videdit-config")))
    mp.delenv("VIDEDIT_C2PA_KEY", raising=False)
    mp.delenv("VIDEDIT_C2PA_CERT", raising=False)
    yield
    mp.undo()
