package kafkaopts

import "time"

// ReaderMaxWait is the kafka.ReaderConfig.MaxWait that makes a partition
// reader's fetches wait up to wait on the broker and still read a response
// that arrives up to a second after that.
//
// kafka-go uses MaxWait as the read deadline of the fetch response and asks
// the broker to wait MaxWait less a margin for the response to travel: a
// second from MaxWait = 1 s up, a quarter of MaxWait below. Given the few
// hundred milliseconds a consumer wants as its broker wait, that margin is
// tens of milliseconds, which a process short of CPU (a throttled pod, a busy
// node, a test machine) misses; kafka-go then closes the connection, dials
// again and fetches again, and under sustained load a reader consumes next to
// nothing. Asking for wait plus a second keeps the broker's wait at wait and
// gives the response the full second. Only a response later than that costs a
// reconnect; a closing reader still waits only for the broker's answer, which
// on an idle partition comes after wait (TestLateFetchResponses).
func ReaderMaxWait(wait time.Duration) time.Duration { return wait + time.Second }
