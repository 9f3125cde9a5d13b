package com.example.schedules;

import org.springframework.amqp.core.Binding;
import org.springframework.amqp.core.BindingBuilder;
import org.springframework.amqp.core.Queue;
import org.springframework.amqp.core.TopicExchange;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/** Broker topology, declared by Spring AMQP when it first connects. */
@Configuration
public class Messaging {

  public static final String EXCHANGE = "schedules";
  public static final String CREATED_KEY = "schedule.created";
  public static final String CREATED_QUEUE = "schedule-tracker.schedule-created";

  @Bean
  TopicExchange schedulesExchange() {
    return new TopicExchange(EXCHANGE, true, false);
  }

  @Bean
  Queue scheduleCreatedQueue() {
    return new Queue(CREATED_QUEUE, true);
  }

  @Bean
  Binding scheduleCreatedBinding(Queue scheduleCreatedQueue, TopicExchange schedulesExchange) {
    return BindingBuilder.bind(scheduleCreatedQueue).to(schedulesExchange).with(CREATED_KEY);
  }
}
