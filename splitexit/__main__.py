from splitexit.cli import main

main()
