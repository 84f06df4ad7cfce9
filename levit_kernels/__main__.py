from levit_kernels.cli import main

raise SystemExit(main())
