from ivideogpt.cli import main

raise SystemExit(main())
