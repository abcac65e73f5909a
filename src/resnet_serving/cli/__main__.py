from resnet_serving.cli import main

raise SystemExit(main())
