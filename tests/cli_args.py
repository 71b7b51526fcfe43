"""Command-line flags shared by the tests that run the ``mfr`` command on a tiny synthetic setup."""

#: A 16-px, width-4, 16-d small CNN, 4 identities per batch.
TINY_NET = ["--input-size", "16", "--width", "4", "--embedding-dim", "16", "--batch-ids", "4"]
#: Three synthetic domains of 8 identities and the tiny network.
TINY = ["--synthetic-domains", "3", "--synthetic-ids", "8", *TINY_NET]
#: Grey images, no progress bars.
_GRAY = ["--channels", "1", "--no-progress"]
#: TINY on grey images, without progress bars.
TINY_GRAY = [*TINY, *_GRAY]
#: The tiny network on grey images (for data given by --data), without progress bars.
TINY_NET_GRAY = [*TINY_NET, *_GRAY]
