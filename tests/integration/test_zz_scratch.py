import time, os
from test_pool import Pool, assert_all_once
from test_ha import stop_all

def conns(stack):
    return stack.sql("SELECT user, command, COUNT(*) FROM information_schema.PROCESSLIST GROUP BY user, command")

def test_scratch_conns(stack):
    pool = Pool(stack, "pl_sc", 10)
    print("  before: %s" % (conns(stack),))
    t = pool.replica("r1").start()
    pool.wait_held({"r1"}, timeout=120)
    time.sleep(4)
    print("  one replica leading 10: %s" % (conns(stack),))
    t2 = pool.replica("r2").start()
    time.sleep(6)
    print("  and a follower of 10: %s" % (conns(stack),))
    stop_all([t, t2])
