from cvops.cli import main

main()
