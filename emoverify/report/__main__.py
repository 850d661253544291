from emoverify.report.build import main

raise SystemExit(main())
