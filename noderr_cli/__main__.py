from noderr_cli.main import main

main()
