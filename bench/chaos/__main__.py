from bench.chaos import main

main()
