package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		greeting := os.Getenv("GREETING")
		if greeting == "" {
			greeting = "Hello"
		}
		fmt.Fprintf(w, "%s from go-hello!\n", greeting)
	})
	log.Printf("listening on [::]:%s", port)
	log.Fatal(http.ListenAndServe("[::]:"+port, nil))
}
