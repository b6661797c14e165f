from lancert.commands.main import main

main()
