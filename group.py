import asyncio, sys
from aiokafka import AIOKafkaConsumer, TopicPartition
BS=sys.argv[1]
async def main():
    c=AIOKafkaConsumer("t1",bootstrap_servers=BS,group_id="g",auto_offset_reset="earliest",enable_auto_commit=False)
    await c.start()
    if sys.argv[2]=="commit":
        n=0
        while n<1000:
            r=await c.getmany(timeout_ms=1000)
            n+=sum(len(v) for v in r.values())
        await c.commit(); print("consumed+committed",n)
    print({tp.partition: await c.committed(tp) for tp in [TopicPartition("t1",p) for p in range(4)]})
    await c.stop()
asyncio.run(main())
