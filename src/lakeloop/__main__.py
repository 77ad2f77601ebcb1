from lakeloop.cli import main

main()
