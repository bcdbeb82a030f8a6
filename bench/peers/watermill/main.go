// Watermill's SQL -> Kafka forwarder (components/forwarder with watermill-sql/v4 on
// PostgreSQL and watermill-kafka/v3), measured on txbox's benchmark database and broker.
// Writes N messages of 200 B through the forwarder's publisher in transactions of 1000
// (the outbox write), then starts the forwarder and times it from the first message in
// Kafka to the N-th. Prints the rate (msgs/s) on stdout, progress on stderr.
//
//	watermill-bench PG_CONNINFO KAFKA_BOOTSTRAP N [SUBSCRIBE_BATCH]
package main

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "watermill-bench:", err)
		os.Exit(1)
	}
}

func progress(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "[watermill %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, a...))
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: watermill-bench PG_CONNINFO KAFKA_BOOTSTRAP N [SUBSCRIBE_BATCH]")
		os.Exit(2)
	}
	conninfo, brokers := os.Args[1], strings.Split(os.Args[2], ",")
	n, err := strconv.Atoi(os.Args[3])
	must(err)
	batch := 100 // watermill-sql's default SubscribeBatchSize
	if len(os.Args) > 4 {
		batch, err = strconv.Atoi(os.Args[4])
		must(err)
	}
	ctx := context.Background()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	fwdTopic := "wm_forwarder_" + suffix // the SQL table the outbox writes go to
	dest := "wm_dest_" + suffix          // the Kafka topic
	logger := watermill.NopLogger{}

	db, err := stdsql.Open("pgx", conninfo)
	must(err)
	defer db.Close()
	db.SetMaxOpenConns(8)
	schema := wmsql.DefaultPostgreSQLSchema{
		GeneratePayloadType: func(string) string { return "BYTEA" },
		SubscribeBatchSize:  batch,
	}
	offsets := wmsql.DefaultPostgreSQLOffsetsAdapter{}

	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		ConsumerGroup:    "bench",
		SchemaAdapter:    schema,
		OffsetsAdapter:   offsets,
		InitializeSchema: true,
		PollInterval:     100 * time.Millisecond,
	}, logger)
	must(err)
	must(sub.SubscribeInitialize(fwdTopic))

	// The outbox writes: the forwarder's publisher wraps the SQL publisher of each transaction.
	progress("writing %d messages (forwarder publisher in transactions of 1000)", n)
	payload := []byte(strings.Repeat("p", 200))
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		tx, err := db.BeginTx(ctx, nil)
		must(err)
		sqlPub, err := wmsql.NewPublisher(wmsql.TxFromStdSQL(tx), wmsql.PublisherConfig{SchemaAdapter: schema}, logger)
		must(err)
		pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: fwdTopic})
		var msgs []*message.Message
		for j := i; j < n && j < i+1000; j++ {
			m := message.NewMessage(watermill.NewUUID(), payload)
			m.Metadata.Set("key", "key-"+strconv.Itoa(j%1000))
			msgs = append(msgs, m)
		}
		must(pub.Publish(dest, msgs...))
		must(tx.Commit())
	}
	progress("written in %.1f s", time.Since(start).Seconds())

	// The forwarder: SQL subscriber -> Kafka publisher, acks=all and idempotent like txbox.
	sc := kafka.DefaultSaramaSyncPublisherConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	kpub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers:               brokers,
		Marshaler:             kafka.DefaultMarshaler{},
		OverwriteSaramaConfig: sc,
	}, logger)
	must(err)
	// Create the destination topic first (one message), so the timing starts at offset 1.
	must(kpub.Publish(dest, message.NewMessage(watermill.NewUUID(), []byte("warm-up"))))

	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	must(err)
	defer client.Close()
	// The topic's end offset summed over its partitions (bench/run.sh has the broker create
	// topics with 6).
	end := func() int64 {
		must(client.RefreshMetadata(dest))
		parts, err := client.Partitions(dest)
		must(err)
		var sum int64
		for _, p := range parts {
			off, err := client.GetOffset(dest, p, sarama.OffsetNewest)
			must(err)
			sum += off
		}
		return sum
	}
	base := end()

	fwd, err := forwarder.NewForwarder(sub, kpub, logger, forwarder.Config{ForwarderTopic: fwdTopic})
	must(err)
	go func() { must(fwd.Run(ctx)) }()
	progress("forwarder started (SubscribeBatchSize %d)", batch)
	var first int64
	for first = end(); first <= base; first = end() {
		time.Sleep(2 * time.Millisecond)
	}
	t0 := time.Now()
	last := first
	deadline := time.Now().Add(10 * time.Minute)
	for last < base+int64(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		last = end()
	}
	s := time.Since(t0).Seconds()
	rate := float64(last-first) / s
	progress("forwarded %d messages in %.1f s: %.0f msgs/s", last-first, s, rate)
	_ = fwd.Close()
	fmt.Printf("%.0f\n", rate)
}
