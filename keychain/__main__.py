from keychain.cli import main

raise SystemExit(main())
