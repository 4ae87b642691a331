from scenecut.cli import main

main()
