from convertd.cli import main

raise SystemExit(main())
