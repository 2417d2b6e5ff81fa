from dpvault.cli import main

main()
