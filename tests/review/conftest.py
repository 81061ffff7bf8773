from tests.transfers.conftest import aws_conn, bucket, moto_endpoint, s3_calls, s3_client

__all__ = ["aws_conn", "bucket", "moto_endpoint", "s3_calls", "s3_client"]
