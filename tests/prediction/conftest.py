"""What the tests of the prediction share: a user cache folder of each module's own."""

import pytest

from imc_cluster.core.cache import CACHE_ENV


@pytest.fixture(autouse=True, scope="module")
def user_cache(tmp_path_factory):
    """The user cache folder of this module's tests (``$IMC_CLUSTER_CACHE_DIR``), set before its other
    fixtures (the model trained on a folder of photos among them), so that nothing is cached in the home
    folder."""
    folder = tmp_path_factory.mktemp("user_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder
