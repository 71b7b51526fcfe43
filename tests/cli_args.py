"""Command-line flags shared by the tests that run the ``mfr`` command on a tiny synthetic setup."""

#: Three synthetic domains of 8 identities, a 16-px, width-4, 16-d small CNN, 4 identities per batch.
TINY = [
    "--synthetic-domains",
    "3",
    "--synthetic-ids",
    "8",
    "--input-size",
    "16",
    "--width",
    "4",
    "--embedding-dim",
    "16",
    "--batch-ids",
    "4",
]
