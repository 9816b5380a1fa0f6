from rmapsim.cli import main

raise SystemExit(main())
