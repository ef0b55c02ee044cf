"""Lambda function: the style functions' on-failure destination; marks the job failed, keeps the record."""

from atelier.entrypoints.deadletter import deadletter_handler

handler = deadletter_handler()
