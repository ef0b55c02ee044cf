"""AWS adapters (S3, DynamoDB) and the Lambda entry points; the only part of the package that imports boto3."""
