package com.example.schedules;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.AmqpException;
import org.springframework.amqp.rabbit.annotation.RabbitListener;
import org.springframework.amqp.rabbit.core.RabbitTemplate;
import org.springframework.stereotype.Component;

/**
 * Publishes "schedule created" to RabbitMQ and consumes it back, marking the schedule confirmed: the
 * round trip through the broker is visible through the API.
 */
@Component
public class ScheduleEvents {

  private static final Logger LOG = LoggerFactory.getLogger(ScheduleEvents.class);

  private final RabbitTemplate rabbit;
  private final ScheduleRepository repository;

  public ScheduleEvents(RabbitTemplate rabbit, ScheduleRepository repository) {
    this.rabbit = rabbit;
    this.repository = repository;
  }

  /** Best effort: the schedule is stored either way; a lost event leaves it unconfirmed. */
  public void published(Schedule schedule) {
    try {
      rabbit.convertAndSend(Messaging.EXCHANGE, Messaging.CREATED_KEY, Long.toString(schedule.id()));
      LOG.info("schedule {} created, event published", schedule.id());
    } catch (AmqpException e) {
      LOG.warn("could not publish the event of schedule {}: {}", schedule.id(), e.getMessage());
    }
  }

  @RabbitListener(queues = Messaging.CREATED_QUEUE)
  public void onCreated(String id) {
    long scheduleId = Long.parseLong(id.trim());
    if (repository.confirm(scheduleId)) {
      LOG.info("schedule {} confirmed", scheduleId);
    } else {
      LOG.warn("event for unknown schedule {}", scheduleId);
    }
  }
}
