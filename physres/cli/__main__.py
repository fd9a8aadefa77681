from physres.cli import main

raise SystemExit(main())
