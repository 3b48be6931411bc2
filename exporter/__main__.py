import sys

if sys.argv[1:2] == ["report"]:
    from exporter.report.cli import main as report

    sys.exit(report(sys.argv[2:]))

from exporter.cli import main

sys.exit(main())
