from emoverify.cli import main

raise SystemExit(main())
