module github.com/example/go-hello

go 1.22
