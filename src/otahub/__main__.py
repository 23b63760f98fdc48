from otahub.cli import main

main()
