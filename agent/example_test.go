package agent_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/umbranet/umbra/agent"
)

// Two programs on an umbra network: one hosts the service "hello" with no listening
// socket, the other reaches it by name, first as a plain circuit and then with
// net/http. Each needs an identity enrolled once with a token from
// `umbra edge create identity NAME --jwt-out FILE`, and policies letting the first bind
// "hello" and the second dial it. (The example compiles as a test; it runs against a
// real network, as test/sdk does.)
func Example_dialAndListen() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The host: enrolled before with agent.Enroll(ctx, token, agent.EnrollOptions{Path: "host.json"}).
	hostID, err := agent.LoadIdentity("host.json")
	if err != nil {
		log.Fatal(err)
	}
	host, err := agent.New(ctx, agent.Config{Identity: hostID})
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	ln, err := host.Listen(ctx, "hello") // returns once the router has the binding
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s\n", r.RemoteAddr) // SERVICE@IDENTITY of the dialer
	}))

	// The client, usually another program on another device.
	clientID, err := agent.LoadIdentity("client.json")
	if err != nil {
		log.Fatal(err)
	}
	client, err := agent.New(ctx, agent.Config{Identity: clientID})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// A circuit is a net.Conn, end-to-end encrypted between the two identities.
	c, err := client.Dial(ctx, "hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: hello\r\n\r\n")
	c.CloseWrite()
	raw, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("%d bytes from %s\n", len(raw), c.Identity())

	// net/http reaches the service by its name through the agent's Dialer.
	web := &http.Client{Transport: &http.Transport{DialContext: client.Dialer().DialContext}}
	resp, err := web.Get("http://hello/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
}
