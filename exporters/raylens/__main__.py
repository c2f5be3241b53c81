from raylens.cli import main

raise SystemExit(main())
