from lispnet.cli.main import main

main()
