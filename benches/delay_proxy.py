#!/usr/bin/env python3
"""A TCP proxy that adds latency: every chunk is forwarded DELAY seconds after it arrived, in
both directions (so the round trip grows by twice DELAY), order kept, chunks in flight
overlapping as on a long link. This kernel has no netem qdisc.

    delay_proxy.py DELAY LISTEN_IP:PORT=UPSTREAM_IP:PORT [...]
"""
import asyncio
import sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((0, None))
        await sender


async def serve(listen, upstream, delay):
    host, port = upstream.rsplit(":", 1)

    async def handle(c_reader, c_writer):
        try:
            s_reader, s_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(
            pipe(c_reader, s_writer, delay),
            pipe(s_reader, c_writer, delay),
            return_exceptions=True,
        )

    ip, lport = listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, ip, int(lport))
    async with server:
        await server.serve_forever()


async def main():
    delay = float(sys.argv[1])
    await asyncio.gather(*(serve(*pair.split("="), delay) for pair in sys.argv[2:]))


if __name__ == "__main__":
    asyncio.run(main())
