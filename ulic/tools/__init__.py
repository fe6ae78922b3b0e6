"""Tools on the public pipeline: benchmarks (`python -m ulic.tools.bench_codec`, `bench_decoder`,
`bench_large`) and the decoder fuzzer (`python -m ulic.tools.fuzz`)."""
