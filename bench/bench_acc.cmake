vmig_bench(bench_acc LIBS vmig_acc PkgConfig::ZSTD)
