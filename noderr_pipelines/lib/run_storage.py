"""Where Dagster keeps step outputs between steps: S3 in production, DAGSTER_HOME locally.

`RunStorageIOManager` is the project's `io_manager`. It decides when a step starts (never at
import), from the NODERR_* settings:
- NODERR_DAGSTER_IO_BUCKET set: dagster-aws's pickled-object S3 IO manager under
  NODERR_DAGSTER_IO_PREFIX, through the platform's S3 client (same endpoint, credentials, timeouts
  and retries as every other S3 client). A run launched in one container (K8s/Docker run launcher,
  code server) can then be re-executed from any step in another: the inputs are in S3, not on a
  container's disk.
- unset (local default): Dagster's filesystem IO manager under DAGSTER_HOME/storage.
"""

import dagster as dg
from dagster_aws.s3.io_manager import PickledObjectS3IOManager

from noderr_core.settings import Settings
from noderr_core.storage.s3 import make_s3_client


class RunStorageIOManager(dg.ConfigurableIOManagerFactory):
    """Step outputs in S3 when NODERR_DAGSTER_IO_BUCKET is set, else under DAGSTER_HOME/storage."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        settings = Settings()
        if settings.dagster_io_bucket:
            return PickledObjectS3IOManager(
                settings.dagster_io_bucket, make_s3_client(settings),
                s3_prefix=settings.dagster_io_prefix,
            )
        return dg.FilesystemIOManager().create_io_manager(context)
