"""The DICOM node: storage SCP, durable spool and job records, huey task queue, workers, sender, status."""
