"""The AWS adapters: S3, DynamoDB (status, hash index), SQS, and the translation of AWS errors."""
