from bulk_attach.cli import main

main()
