"""Root conftest: loaded for every pytest run in this project, including
`pytest --nbval-lax templates` or `notebooks` alone."""
import os
import tempfile


def pytest_configure(config):
    """Keep the repository clean: kernels started by nbval inherit this
    environment, so interactive runs made by templates and notebooks go to a
    temporary runs folder instead of ./runs next to the notebook."""
    if "EXPKIT_RUNS" not in os.environ:
        os.environ["EXPKIT_RUNS"] = tempfile.mkdtemp(prefix="expkit-test-runs-")
    os.environ.setdefault("MPLBACKEND", "Agg")
