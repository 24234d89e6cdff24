from meshbatch.cli import main

raise SystemExit(main())
