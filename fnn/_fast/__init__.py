"""fnn._fast: faster computations of values that are defined plainly elsewhere.

Each module here computes exactly the values of a plain ``jax.numpy`` definition that
lives in the file a reader opens for the op, and a test proves the two bit-identical (or
equal to rounding, where another summation order is the point):

- ``threefry.random_bits``: ``jax.random.bits(key, shape, uint32)`` for threefry keys,
  with the hash written out unrolled (``tests/test_threefry.py``);
- ``dropout_masks.keep_mask``: ``fnn.functional.stochastic.keep_mask``, the units dropout
  keeps, packed 32 decisions to a word (``tests/test_fast_dropout_masks.py``);
- ``batch_norm``: ``F.batch_norm``'s per-channel sums for 4-D and larger inputs, in one pass
  over the data; equal to the two-pass definition to rounding (another summation order, so
  not bit for bit: ``tests/test_fast_batch_norm.py``).
- ``conv``: ``F.conv1d``/``F.conv2d``'s three correlations (forward, grad_input,
  grad_weight) in XLA:CPU's canonical NHWC/HWIO layout, fast inside ``lax.scan``; equal to
  the NCHW definitions to rounding (``tests/test_fast_conv.py``).

Nothing here defines behaviour: change the plain definition, and the test fails until the
fast path follows.
"""
