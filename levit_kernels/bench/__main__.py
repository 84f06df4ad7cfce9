from levit_kernels.bench.command import main

raise SystemExit(main())
