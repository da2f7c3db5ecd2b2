// The baseline for the startup figure (bench/_startup.ts): a script that only listens on TCP
// and says so on stderr, as the gateway's "usbipgw serving" line does. Usage: _listen_only.ts PORT

const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(Deno.args[0]) });
console.error("listening");
for await (const conn of listener) conn.close();
