"""AWS adapters (S3, DynamoDB) and the Lambda entry points: the only part of atelier that imports boto3."""
