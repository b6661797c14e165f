from lancert.cli import main

main()
